"""zidl's code generator: IDL files in, typed Python modules out, and the `zidl` command line."""
