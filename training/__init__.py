"""visionserve training: offline model building and export (python -m training ...)."""
