"""The pure core: values and functions over them. Imports only the standard library."""
