"""Lightning callbacks the training and evaluation runs attach (``conf/callbacks/``)."""
