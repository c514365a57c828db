"""The public Python API (`tfcnn.train`, `tfcnn.load`, ...), which the CLI and the server
call too. Import its names from `tfcnn` itself; see that module's docstring."""
