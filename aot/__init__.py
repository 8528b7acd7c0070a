"""Build-time compiler: op and variant declarations, the triton.compile driver, C++ codegen.

Nothing in this package runs when gems_aot is used; it runs when the extension is built.
"""
