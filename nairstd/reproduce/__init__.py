"""One module per notebook: the steps each numbered notebook calls, so cells stay one-liners."""
