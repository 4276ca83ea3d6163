"""The fastMRI+ brain annotations (brain.csv, brain_file_list.csv) with their MIT LICENSE."""
