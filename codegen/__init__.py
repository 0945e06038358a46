"""zidl's code generator: IDL files in, typed Python modules out; its `generate` and `check` commands (`cli`)."""
