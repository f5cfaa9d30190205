"""What depth says about the masks: structure planes, refined masks, 3D objects, support relations."""
