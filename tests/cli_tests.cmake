foreach(case help bad-values missing-data wrong-width json text threads diverge logs resume sigint
             sigint-twice bad-checkpoint safetensors)
  add_test(NAME cli_${case}
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh $<TARGET_FILE:brisk-train> ${case}
                   ${PROJECT_SOURCE_DIR}/apps/brisk-train.c $<TARGET_FILE:brisk-events>
                   ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(cli_${case} PROPERTIES LABELS "app" TIMEOUT 180 SKIP_RETURN_CODE 77)
endforeach()
