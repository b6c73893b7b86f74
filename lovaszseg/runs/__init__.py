"""What a run leaves behind and how it is read back: its files, written atomically, and their contract."""
