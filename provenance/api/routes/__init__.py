"""The endpoints by area; each declares the `Access` it needs with `needs(scope, *roles)`."""
