"""Tools built on the public dynamic client: the `zidl` command line's device commands."""
