#pragma once
// The part of OpenMP's omp.h that FAISS's headers name (impl/HNSW.h declares functions taking
// omp_lock_t), for the clang that builds this target: Swift's toolchain ships no omp.h, and
// libfaiss.a itself was built against GCC's libgomp, whose lock type this is.
#ifdef __cplusplus
extern "C" {
#endif
typedef struct {
    unsigned char _x[4] __attribute__((__aligned__(4)));
} omp_lock_t;
void omp_set_num_threads(int);
#ifdef __cplusplus
}
#endif
