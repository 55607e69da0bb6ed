"""Raster I/O: windowed reads of local and s3:// rasters, offset-map COGs, S3 settings."""
