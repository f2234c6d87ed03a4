/* brisk/brisk.h: everything a program needs from Brisk, in one include.
 *
 *   data sets (IDX, .npy, CSV, your arrays)     brisk/data.h
 *   models, layers, your own layers              brisk/model.h, brisk/layer.h, brisk/team.h
 *   llm.c's GPT-2 model files                    brisk/llmc.h
 *   optimizers and schedules                     brisk/optim.h
 *   one training step, evaluation, prediction    brisk/trainer.h
 *   the training loop                            brisk/fit.h
 *   a run: settings, resume, logs; prediction    brisk/run.h
 *   checkpoints and checkpoint directories       brisk/checkpoint.h, brisk/ckptdir.h
 *   TensorBoard logs                             brisk/logger.h, brisk/tblog.h
 *   several processes (mpirun)                   brisk/comm.h
 *   errors                                       brisk/error.h
 *   the matrix product, random numbers           brisk/gemm.h, brisk/rng.h
 *
 * Every header also compiles on its own, in C11 and C++17. Link libbrisk (find_package(Brisk)
 * and Brisk::brisk, or pkg-config brisk), or libbrisk_mpi for mpirun jobs.
 */
#ifndef BRISK_BRISK_H
#define BRISK_BRISK_H

#include "brisk/checkpoint.h"
#include "brisk/ckptdir.h"
#include "brisk/comm.h"
#include "brisk/data.h"
#include "brisk/error.h"
#include "brisk/fit.h"
#include "brisk/gemm.h"
#include "brisk/layer.h"
#include "brisk/llmc.h"
#include "brisk/logger.h"
#include "brisk/model.h"
#include "brisk/optim.h"
#include "brisk/report.h"
#include "brisk/rng.h"
#include "brisk/run.h"
#include "brisk/tblog.h"
#include "brisk/team.h"
#include "brisk/trainer.h"

#endif
