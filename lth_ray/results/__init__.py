"""Files in, files out: read an experiment, export Parquet and the thesis' format, analyse, report."""
