#pragma once
// A thin C face over FAISS's C++ API (Debian's libfaiss.a has no C API symbols): the index
// factory, train, add with ids, search, search parameters, write and read, for float indexes
// (inner product or L2) and binary ones (Hamming). Every call that can fail returns 0 on success,
// else -1 with FAISS's message in err (errlen bytes, NUL-terminated): a C++ exception never
// crosses into Swift.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An index: a faiss::Index or a faiss::IndexBinary, always behind an id map, so add_with_ids
/// works for every factory string (Flat and HNSW have no ids of their own).
typedef struct embedtune_faiss_index embedtune_faiss_index;

/// metric: 0 inner product, 1 L2 (float indexes; binary ones are Hamming). binary: the factory
/// string is index_binary_factory's ("BFlat", "BHNSW32", "BIVF1024") and dim counts bits.
int embedtune_faiss_create(const char *factory, int dim, int metric, int binary, embedtune_faiss_index **out, char *err,
                           size_t errlen);
void embedtune_faiss_free(embedtune_faiss_index *index);

int embedtune_faiss_is_binary(const embedtune_faiss_index *index);
int embedtune_faiss_is_trained(const embedtune_faiss_index *index);
int embedtune_faiss_dimension(const embedtune_faiss_index *index);
int64_t embedtune_faiss_count(const embedtune_faiss_index *index);

/// x: n rows of dim floats, or of dim/8 bytes for a binary index.
int embedtune_faiss_train(embedtune_faiss_index *index, int64_t n, const void *x, char *err, size_t errlen);
int embedtune_faiss_add_with_ids(embedtune_faiss_index *index, int64_t n, const void *x, const int64_t *ids, char *err,
                                 size_t errlen);
/// k best per query row: distances (n, k) (similarities for inner product, Hamming distances as
/// floats for binary) and labels (n, k), −1 where fewer than k were found.
int embedtune_faiss_search(const embedtune_faiss_index *index, int64_t n, const void *x, int64_t k, float *distances,
                           int64_t *labels, char *err, size_t errlen);
/// A search-time parameter by FAISS's name ("nprobe" for IVF, "efSearch" for HNSW), through the id map.
int embedtune_faiss_set_parameter(embedtune_faiss_index *index, const char *name, double value, char *err, size_t errlen);

int embedtune_faiss_write(const embedtune_faiss_index *index, const char *path, char *err, size_t errlen);
int embedtune_faiss_read(const char *path, int binary, embedtune_faiss_index **out, char *err, size_t errlen);

/// OpenMP threads FAISS uses for search and add (omp_set_num_threads).
void embedtune_faiss_set_threads(int threads);

#ifdef __cplusplus
}
#endif
