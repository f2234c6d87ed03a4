// Every public header of Brisk, included from C++: the declarations must be extern "C" and
// the inline functions valid C++. Prints the matrix kernel and a model's summary.
#include "brisk/checkpoint.h"
#include "brisk/ckptdir.h"
#include "brisk/comm.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/fsutil.h"
#include "brisk/gemm.h"
#include "brisk/layer.h"
#include "brisk/logger.h"
#include "brisk/model.h"
#include "brisk/optim.h"
#include "brisk/pool.h"
#include "brisk/ring.h"
#include "brisk/rng.h"
#include "brisk/team.h"
#include "brisk/tfrecord.h"
#include "brisk/trainer.h"

#include <cstdio>

int main()
{
    brisk_model_config cfg = {};
    if (brisk_model_config_set(&cfg, "cnn", brisk_shape_img(1, 28, 28)) != BRISK_OK) {
        std::fprintf(stderr, "%s\n", brisk_error_detail());
        return 1;
    }
    brisk_model *m = nullptr;
    if (brisk_model_create(&cfg, &m) != BRISK_OK)
        return 1;
    char buf[4096];
    brisk_model_summary(m, buf, sizeof buf);
    std::printf("%s(%s kernels, from C++)\n", buf, brisk_gemm_isa());
    brisk_model_destroy(m);
    return 0;
}
