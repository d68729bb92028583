"""`p2d review`: a local page where a user fixes what curation got wrong, saved in the files the commands
read.

drawings.py reads a `crop-drawings` folder and writes the user's boxes (boxes.csv) and re-crops;
photos and duplicates go through p2d.curate.overrides; server.py serves the page in page/.
"""
