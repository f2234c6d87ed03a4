foreach(case help cnn-recipe bad-values missing-data wrong-width json text threads diverge logs resume sigint
             sigint-twice bad-checkpoint safetensors test-labels edited-checkpoint
             runs too-big sigint-eval policies predict predict-input image-shape eval-other-data
             special-files run-lock disk-full run-dirs data-kinds tokens label-smoothing
             lr-find accumulate augment ema mixup precision)
  add_test(NAME cli_${case}
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh $<TARGET_FILE:brisk-train> ${case}
                   ${PROJECT_SOURCE_DIR}/apps/brisk-train.c $<TARGET_FILE:brisk-events>
                   ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(cli_${case} PROPERTIES LABELS "app" TIMEOUT 180 SKIP_RETURN_CODE 77)
endforeach()

# Several processes on loopback (BRISK_MPI builds with mpirun available).
if(BRISK_MPI AND MPIEXEC_EXECUTABLE)
  foreach(case identical cnn accumulate augment gpt bf16 resume kill sigint hung stop-rank0 escapes)
    add_test(NAME mpi_${case}
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/mpi_test.sh ${MPIEXEC_EXECUTABLE}
                     $<TARGET_FILE:brisk-train> ${case})
    # Open MPI leaves allocations of its dynamically loaded components behind at
    # MPI_Finalize; LeakSanitizer cannot tell them from ours, so leak checks are off for
    # these tests (the address and undefined-behaviour checks stay on).
    set_tests_properties(mpi_${case} PROPERTIES LABELS "app;mpi" TIMEOUT 180 RUN_SERIAL TRUE
                         ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
  endforeach()
  add_test(NAME mpi_kill_points
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/kill_points.sh $<TARGET_FILE:brisk-train>
                   ${BRISK_TB_READ} ${MPIEXEC_EXECUTABLE})
  set_tests_properties(mpi_kill_points PROPERTIES LABELS "app;mpi;tensorboard" TIMEOUT 300
                       RUN_SERIAL TRUE SKIP_RETURN_CODE 77 SKIP_REGULAR_EXPRESSION "SKIP: "
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
endif()
