#include "embedtune_faiss.h"

#include <faiss/AutoTune.h>
#include <faiss/IndexBinary.h>
#include <faiss/IndexBinaryHNSW.h>
#include <faiss/IndexBinaryIVF.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <omp.h>
#include <stdexcept>
#include <string>
#include <vector>

using idx_t = faiss::Index::idx_t;

struct embedtune_faiss_index {
    faiss::Index *floats = nullptr;       // an IndexIDMap2 owning the factory's index
    faiss::IndexBinary *bits = nullptr;   // an IndexBinaryIDMap owning the factory's index
    ~embedtune_faiss_index() {
        delete floats;
        delete bits;
    }
};

namespace {

void put(char *err, size_t errlen, const char *message) {
    if (err && errlen) std::snprintf(err, errlen, "%s", message);
}

/// Runs body, turning any exception into -1 and its message.
template <typename Body> int guarded(char *err, size_t errlen, Body body) {
    try {
        body();
        return 0;
    } catch (const std::exception &e) {
        put(err, errlen, e.what());
    } catch (...) {
        put(err, errlen, "unknown FAISS error");
    }
    return -1;
}

// An id map over `inner`, which it then owns; `inner` is freed if the map cannot be made (an
// index read from a file that already holds rows, without ids of its own).
faiss::Index *withIDs(faiss::Index *inner) {
    if (dynamic_cast<faiss::IndexIDMap *>(inner)) return inner;
    std::unique_ptr<faiss::Index> owned(inner);
    auto *map = new faiss::IndexIDMap2(owned.get());
    map->own_fields = true;
    owned.release();
    return map;
}

faiss::IndexBinary *withIDs(faiss::IndexBinary *inner) {
    if (dynamic_cast<faiss::IndexBinaryIDMap *>(inner)) return inner;
    std::unique_ptr<faiss::IndexBinary> owned(inner);
    auto *map = new faiss::IndexBinaryIDMap(owned.get());
    map->own_fields = true;
    owned.release();
    return map;
}

/// The index under a binary id map (ParameterSpace does not know binary indexes).
faiss::IndexBinary *unwrapped(faiss::IndexBinary *index) {
    if (auto *map = dynamic_cast<faiss::IndexBinaryIDMap *>(index)) return map->index;
    return index;
}

}  // namespace

extern "C" {

int embedtune_faiss_create(const char *factory, int dim, int metric, int binary, embedtune_faiss_index **out, char *err,
                           size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        auto *index = new embedtune_faiss_index();
        try {
            if (binary) {
                index->bits = withIDs(faiss::index_binary_factory(dim, factory));
            } else {
                auto m = metric == 1 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
                index->floats = withIDs(faiss::index_factory(dim, factory, m));
            }
        } catch (...) {
            delete index;
            throw;
        }
        *out = index;
    });
}

void embedtune_faiss_free(embedtune_faiss_index *index) { delete index; }

int embedtune_faiss_is_binary(const embedtune_faiss_index *index) { return index->bits != nullptr; }

int embedtune_faiss_is_trained(const embedtune_faiss_index *index) {
    return index->bits ? index->bits->is_trained : index->floats->is_trained;
}

int embedtune_faiss_dimension(const embedtune_faiss_index *index) { return index->bits ? index->bits->d : index->floats->d; }

int64_t embedtune_faiss_count(const embedtune_faiss_index *index) {
    return index->bits ? index->bits->ntotal : index->floats->ntotal;
}

int embedtune_faiss_train(embedtune_faiss_index *index, int64_t n, const void *x, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        if (index->bits) index->bits->train(n, static_cast<const uint8_t *>(x));
        else index->floats->train(n, static_cast<const float *>(x));
    });
}

int embedtune_faiss_add_with_ids(embedtune_faiss_index *index, int64_t n, const void *x, const int64_t *ids, char *err,
                                 size_t errlen) {
    return guarded(err, errlen, [&] {
        const idx_t *labels = reinterpret_cast<const idx_t *>(ids);
        if (index->bits) index->bits->add_with_ids(n, static_cast<const uint8_t *>(x), labels);
        else index->floats->add_with_ids(n, static_cast<const float *>(x), labels);
    });
}

int embedtune_faiss_search(const embedtune_faiss_index *index, int64_t n, const void *x, int64_t k, float *distances,
                           int64_t *labels, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        idx_t *out = reinterpret_cast<idx_t *>(labels);
        if (index->bits) {
            std::vector<int32_t> hamming(static_cast<size_t>(n * k));
            index->bits->search(n, static_cast<const uint8_t *>(x), k, hamming.data(), out);
            for (size_t i = 0; i < hamming.size(); i++) distances[i] = static_cast<float>(hamming[i]);
        } else {
            index->floats->search(n, static_cast<const float *>(x), k, distances, out);
        }
    });
}

int embedtune_faiss_set_parameter(embedtune_faiss_index *index, const char *name, double value, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        if (index->floats) {
            if (std::strcmp(name, "efConstruction") == 0) {
                // Not one of ParameterSpace's: the graph's candidate list while rows are added.
                faiss::Index *inner = index->floats;
                if (auto *map = dynamic_cast<faiss::IndexIDMap *>(inner)) inner = map->index;
                auto *hnsw = dynamic_cast<faiss::IndexHNSW *>(inner);
                if (!hnsw) throw std::invalid_argument("efConstruction needs an HNSW index");
                hnsw->hnsw.efConstruction = static_cast<int>(value);
                return;
            }
            faiss::ParameterSpace().set_index_parameter(index->floats, name, value);
            return;
        }
        faiss::IndexBinary *inner = unwrapped(index->bits);
        if (std::strcmp(name, "efConstruction") == 0) {
            auto *hnsw = dynamic_cast<faiss::IndexBinaryHNSW *>(inner);
            if (!hnsw) throw std::invalid_argument("efConstruction needs an HNSW index");
            hnsw->hnsw.efConstruction = static_cast<int>(value);
        } else if (std::strcmp(name, "nprobe") == 0) {
            auto *ivf = dynamic_cast<faiss::IndexBinaryIVF *>(inner);
            if (!ivf) throw std::invalid_argument("nprobe needs an IVF index");
            ivf->nprobe = static_cast<size_t>(value);
        } else if (std::strcmp(name, "efSearch") == 0) {
            auto *hnsw = dynamic_cast<faiss::IndexBinaryHNSW *>(inner);
            if (!hnsw) throw std::invalid_argument("efSearch needs an HNSW index");
            hnsw->hnsw.efSearch = static_cast<int>(value);
        } else {
            throw std::invalid_argument(std::string("unknown binary index parameter ") + name);
        }
    });
}

int embedtune_faiss_write(const embedtune_faiss_index *index, const char *path, char *err, size_t errlen) {
    return guarded(err, errlen, [&] {
        if (index->bits) faiss::write_index_binary(index->bits, path);
        else faiss::write_index(index->floats, path);
    });
}

int embedtune_faiss_read(const char *path, int binary, embedtune_faiss_index **out, char *err, size_t errlen) {
    *out = nullptr;
    return guarded(err, errlen, [&] {
        auto *index = new embedtune_faiss_index();
        try {
            if (binary) index->bits = withIDs(faiss::read_index_binary(path));
            else index->floats = withIDs(faiss::read_index(path));
        } catch (...) {
            delete index;
            throw;
        }
        *out = index;
    });
}

void embedtune_faiss_set_threads(int threads) { omp_set_num_threads(threads > 0 ? threads : 1); }

}  // extern "C"
