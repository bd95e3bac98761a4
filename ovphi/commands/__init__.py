"""The `ovphi` commands, one module each with setup_arg_parser() and main(args), each a thin layer over a
library call whose defaults live in the library."""
