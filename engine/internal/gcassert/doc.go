// Package gcassert holds the test that keeps the module's inlining claims
// true: every function whose doc comment carries the directive
// "//gcassert:inline" must be reported by the compiler (go build
// -gcflags=-m) as one it can inline. A claim that stops holding fails
// `make test` instead of lingering in a comment.
//
// It checks "can inline" (the function is within the inliner's budget), not
// that every call site inlines it, which also depends on the caller.
package gcassert
