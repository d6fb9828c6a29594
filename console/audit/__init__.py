"""The team audit log: writing rows and the console page that reads them."""
