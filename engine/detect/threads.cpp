#include <opencv2/core/utility.hpp>
#include "threads.h"

// gocv v0.32 does not wrap cv::setNumThreads. Returns the previous count.
int loopgate_cv_set_num_threads(int n) {
    int previous = cv::getNumThreads();
    cv::setNumThreads(n);
    return previous;
}
