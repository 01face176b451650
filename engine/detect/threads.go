package detect

/*
#cgo !windows pkg-config: opencv4
#cgo CXXFLAGS: --std=c++11
#include "threads.h"
*/
import "C"

import "fmt"

// SetOpenCVThreads sets how many threads OpenCV's parallel loops (dnn
// layers, resize, colour conversion) may use, and returns the previous
// count. OpenCV has no per-network setting: this is process-wide and
// affects every OpenCV caller. With several YuNet instances running in
// their own goroutines, 1 keeps them from competing for the same cores;
// a single detector on an idle machine is faster with all cores.
func SetOpenCVThreads(n int) (previous int, err error) {
	if n < 1 || n > 1024 {
		return 0, fmt.Errorf("%w: OpenCV threads %d, want 1 to 1024", ErrInvalidConfig, n)
	}
	return int(C.loopgate_cv_set_num_threads(C.int(n))), nil
}
