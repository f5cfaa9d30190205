"""Test-only stand-in for the timm helpers that mobile_sam's TinyViT imports."""
