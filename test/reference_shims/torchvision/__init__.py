"""Test-only stand-in for the parts of torchvision the reference SAM code imports."""
