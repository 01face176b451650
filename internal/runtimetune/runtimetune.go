// Package runtimetune sets the C runtime up for dlib and OpenCV before any
// image work starts. Call Apply first thing in main (benchmark binaries call
// it too, so that they measure what production runs).
//
// Two settings, measured on the project's 2-core machine (figures in
// deploy/install-deps.sh and benchmarks/embed_bench_test.go):
//
//   - One OpenBLAS thread. dlib's ResNet runs its convolutions through
//     cblas_sgemm from the system's libblas.so.3, which install-deps.sh
//     points at OpenBLAS. OpenBLAS starts a thread per core when it loads.
//     A second thread nearly doubled the CPU time per embedding (27-31 →
//     49-54 ms) for at most ~15% lower latency of a lone call, and cut a
//     two-recogniser pool from 54-60 to 43 embeddings/s: parallelism comes
//     from the recogniser pool instead.
//     OpenBLAS reads OPENBLAS_NUM_THREADS in its load-time constructor,
//     before main (and any os.Setenv) runs, so the variable would have to be
//     set by every launcher (shell, systemd unit, go test) or the binary
//     would have to re-exec itself. Instead Apply calls
//     openblas_set_num_threads(1), found with dlsym: it works however the
//     process was started, and it is a no-op under another BLAS. An explicit
//     OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or OMP_NUM_THREADS in the
//     environment stays in force.
//
//   - Fixed glibc malloc thresholds. glibc mmaps blocks above a dynamic
//     threshold and trims the heap top when more than M_TRIM_THRESHOLD is
//     free, so memory a frame freed is faulted in again by the next one,
//     depending on what ran before. In a process running YuNet (OpenCV dnn)
//     alone that was 300-1,200 minor page faults per 720p frame and a median
//     19-22 ms of CPU per detection; with both thresholds fixed, 20-28
//     faults and 17.6-19.5 ms (five runs each). Once dlib's models are loaded the dynamic threshold had already
//     risen and crop+embed showed no difference either way; fixing the
//     thresholds makes this independent of history. The cost is that the
//     process keeps its peak heap (no RSS change measurable here).
//     LOOPGATE_MALLOC_TUNE=off skips it.
package runtimetune

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>

typedef void (*lg_set_threads_fn)(int);
typedef int (*lg_get_threads_fn)(void);
typedef char *(*lg_get_config_fn)(void);

static int lg_has_symbol(const char *name) {
	return dlsym(RTLD_DEFAULT, name) != NULL;
}

// lg_blas_library names the shared object that defines cblas_sgemm for the
// whole process (the one dlib's calls bind to), or returns NULL.
static const char *lg_blas_library(void) {
	void *sym = dlsym(RTLD_DEFAULT, "cblas_sgemm");
	Dl_info info;
	if (sym == NULL || dladdr(sym, &info) == 0) {
		return NULL;
	}
	return info.dli_fname;
}

static int lg_openblas_set_threads(int n) {
	lg_set_threads_fn f = (lg_set_threads_fn)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
	if (f == NULL) {
		return -1;
	}
	f(n);
	return 0;
}

static int lg_openblas_threads(void) {
	lg_get_threads_fn f = (lg_get_threads_fn)dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
	return f == NULL ? -1 : f();
}

static const char *lg_openblas_config(void) {
	lg_get_config_fn f = (lg_get_config_fn)dlsym(RTLD_DEFAULT, "openblas_get_config");
	return f == NULL ? NULL : f();
}

static int lg_mallopt(int param, int value) {
	return mallopt(param, value);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"
)

// Malloc thresholds. 32 MiB is the largest mmap threshold glibc up to 2.34
// accepts on 64-bit (HEAP_MAX_SIZE/2); bookworm's 2.36 accepts any int, but
// a non-main arena's heap is 64 MiB, so larger blocks are mmap'd anyway.
// 32 MiB holds a decoded 4K BGR frame (24 MiB). Measured and not taken: a
// 1 GiB threshold cut dlib's CNN fallback on a face crop from 214-227 to
// 197 ms of CPU for 40-80 MB more RSS; that path runs only when HOG misses.
const (
	MmapThreshold = 32 << 20
	TrimThreshold = 512 << 20
)

// BLAS implementations Apply can tell apart.
const (
	BLASOpenBLAS = "openblas"
	BLASATLAS    = "atlas"
	BLASOther    = "other" // the reference BLAS, or one Apply does not know
	BLASNone     = "none"  // no BLAS in this process
)

// ErrMallopt is returned (wrapped) when glibc refuses a malloc setting.
var ErrMallopt = errors.New("mallopt refused the setting")

// Tuning reports what Apply found and set.
type Tuning struct {
	// BLAS is which implementation serves cblas_sgemm (BLASOpenBLAS, ...).
	BLAS string
	// BLASLibrary is the file it comes from, symlinks resolved.
	BLASLibrary string
	// BLASConfig is OpenBLAS's build description (core, threading).
	BLASConfig string
	// BLASThreads is OpenBLAS's thread count after Apply; 0 when not OpenBLAS.
	BLASThreads int
	// BLASThreadsFromEnv names the variable that set BLASThreads, when one did.
	BLASThreadsFromEnv string
	// MallocTuned is true when both malloc thresholds were set.
	MallocTuned bool
	// Err is the first setting that could not be applied; the others still were.
	Err error
}

// LogValue lets a Tuning be logged as one slog group.
func (t Tuning) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("blas", t.BLAS),
		slog.String("blas_library", t.BLASLibrary),
		slog.Int("blas_threads", t.BLASThreads),
		slog.Bool("malloc_tuned", t.MallocTuned),
	}
	if t.BLASConfig != "" {
		attrs = append(attrs, slog.String("blas_config", t.BLASConfig))
	}
	if t.BLASThreadsFromEnv != "" {
		attrs = append(attrs, slog.String("blas_threads_from", t.BLASThreadsFromEnv))
	}
	if t.Err != nil {
		attrs = append(attrs, slog.String("error", t.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

var (
	once    sync.Once
	applied Tuning
)

// Apply tunes the process once (later calls return the first result). It
// logs nothing: main logs Current() once logging is set up.
func Apply() Tuning {
	once.Do(func() { applied = apply() })
	return applied
}

// Current returns what Apply did, or the zero Tuning before Apply.
func Current() Tuning { return applied }

func apply() Tuning {
	var t Tuning
	t.BLAS, t.BLASLibrary = blasInUse()
	if t.BLAS == BLASOpenBLAS {
		if cfg := C.lg_openblas_config(); cfg != nil {
			t.BLASConfig = strings.TrimSpace(C.GoString(cfg))
		}
		for _, name := range []string{"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"} {
			if v := os.Getenv(name); v != "" {
				t.BLASThreadsFromEnv = name
				break
			}
		}
		if t.BLASThreadsFromEnv == "" {
			C.lg_openblas_set_threads(1)
		}
		t.BLASThreads = int(C.lg_openblas_threads())
	}
	if v := os.Getenv("LOOPGATE_MALLOC_TUNE"); v == "off" || v == "0" || v == "false" {
		return t
	}
	if err := Malloc(); err != nil {
		t.Err = err
	} else {
		t.MallocTuned = true
	}
	return t
}

// Malloc fixes glibc's mmap and trim thresholds (see the package comment).
// Apply calls it; it is exported for benchmarks that compare both settings.
func Malloc() error {
	for _, s := range []struct {
		name         string
		param, value C.int
	}{
		{"M_MMAP_THRESHOLD", C.M_MMAP_THRESHOLD, MmapThreshold},
		{"M_TRIM_THRESHOLD", C.M_TRIM_THRESHOLD, TrimThreshold},
	} {
		if !mallopt(s.param, int(s.value)) {
			return fmt.Errorf("runtimetune: %s=%d: %w", s.name, s.value, ErrMallopt)
		}
	}
	return nil
}

// mmapThresholdParam is M_MMAP_THRESHOLD, for the tests (no cgo there).
const mmapThresholdParam = C.M_MMAP_THRESHOLD

// mallopt is glibc's mallopt; it reports whether glibc accepted the value.
func mallopt(param C.int, value int) bool {
	return C.lg_mallopt(param, C.int(value)) == 1
}

func blasInUse() (kind, library string) {
	lib := C.lg_blas_library()
	if lib == nil {
		return BLASNone, ""
	}
	library = C.GoString(lib)
	if real, err := filepath.EvalSymlinks(library); err == nil {
		library = real
	}
	switch {
	case hasSymbol("openblas_get_config"):
		return BLASOpenBLAS, library
	case hasSymbol("ATL_buildinfo"):
		return BLASATLAS, library
	default:
		return BLASOther, library
	}
}

func hasSymbol(name string) bool {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.lg_has_symbol(cs) == 1
}
