#ifndef LOOPGATE_DETECT_THREADS_H
#define LOOPGATE_DETECT_THREADS_H
#ifdef __cplusplus
extern "C" {
#endif
int loopgate_cv_set_num_threads(int n);
#ifdef __cplusplus
}
#endif
#endif
