// Command libuplink is syncd's C shared library over storj.io/uplink, built
// with `go build -buildmode=c-shared`. It exports the subset of the uplink-c
// C ABI (same names and struct layouts, see uplink_definitions.h) that
// syncd/remotes/_uplink.py needs. It exists because storj.io/uplink-c itself
// is not obtainable from the Go module proxy this project may use.
//
// Memory rules, as in uplink-c: every result struct and every object the
// library returns is allocated with C malloc and must be released with the
// matching uplink_free_* function. Go values never cross into C: C holds
// integer handles into a table (handles.go).
package main

// #include "uplink_definitions.h"
import "C"

func main() {}
