"""Lightning loggers with the run layout lovaszseg promises (``conf/logger/``)."""
