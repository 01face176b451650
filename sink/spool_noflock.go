//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sink

import "os"

// lockFile: no flock here; running two processes on one spool is then the
// operator's to avoid.
func lockFile(*os.File) error { return nil }
