"""Face-recognition door and attendance appliance."""

__version__ = "0.1.0"
