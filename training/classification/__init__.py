"""The classification task: ImageFolder and built-in data, classifiers, decisions (calibration)."""
