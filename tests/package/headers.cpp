// Brisk's one header (all the public ones), included from C++: the declarations must be
// extern "C" and the inline functions valid C++, and the program links: it builds a model and
// a trainer, and calls into the training loop's and the TensorBoard glue's code.
// (package_test.sh also compiles every installed header alone, in C11 and C++17.)
#include "brisk/brisk.h"

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
    // trainer.h, fit.h and tblog.h link from C++ too.
    brisk_trainer_config tc = {};
    tc.model = cfg;
    tc.optim = brisk_optim_defaults(BRISK_OPTIM_ADAM);
    tc.schedule.lr = 1e-3f;
    tc.batch = 8;
    brisk_trainer *t = nullptr;
    if (brisk_trainer_create(&tc, &t) != BRISK_OK) {
        std::fprintf(stderr, "%s\n", brisk_error_detail());
        return 1;
    }
    brisk_fit_config fc = brisk_fit_defaults();
    std::printf("fit defaults: %d epochs, policies watch %s; TensorBoard ring %zu bytes\n",
                fc.epochs, brisk_fit_metric_name(BRISK_FIT_VAL_LOSS), brisk_tb_ring_bytes(t));
    /* The range test and the report, linked from C++: bad arguments are errors, not aborts. */
    brisk_lr_find_result lr = {};
    const brisk_lr_find_config lc = {};
    const int e1 = brisk_lr_find(t, nullptr, nullptr, 0, &lc, &lr);
    const int e2 = brisk_report_plot("/nonexistent/brisk-logs", stdout, nullptr);
    /* The staples too: augmentation's grammar, an epoch, mixup's weight. */
    brisk_augment aug = {};
    const int e3 = brisk_augment_parse("crop:4,spin", &aug);
    const int e4 = brisk_trainer_set_epoch(t, -1);
    const double lam = brisk_mixup_lambda(1, 0, 0.4);
    brisk_trainer_destroy(t);
    if (e1 != BRISK_EINVAL || e2 != BRISK_ENOENT || e3 != BRISK_EINVAL || e4 != BRISK_EINVAL ||
        !(lam >= 0 && lam <= 1)) {
        std::fprintf(stderr, "lr_find %d, report_plot %d, augment_parse %d, set_epoch %d: "
                     "expected EINVAL, ENOENT, EINVAL, EINVAL; mixup weight %g\n", e1, e2, e3,
                     e4, lam);
        return 1;
    }
    return 0;
}
