/* brisk/model_test.h (internal): switches of the model's code paths that only tests use. */
#ifndef BRISK_MODEL_TEST_H
#define BRISK_MODEL_TEST_H

/* on = 0: every layer runs its own backward, also where a first convolution would take its
 * gradients straight from the max pool above it (brisk__conv_backward_routed); on = 1 (the
 * default): it does. The bits are the same either way. Not thread-safe: call it while no
 * backward pass runs. */
void brisk__model_set_routing(int on);

#endif
