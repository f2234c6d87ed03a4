# Warnings and sanitizers for every Brisk target (brisk_set_flags(target)).
set(BRISK_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wpointer-arith -Wcast-qual -Wwrite-strings -Wvla -Wformat=2 -Wundef)
if(BRISK_WERROR)
  list(APPEND BRISK_WARNINGS -Werror)
endif()

if(BRISK_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "BRISK_FUZZ needs clang (libFuzzer): use the fuzz preset, or CC=clang")
  endif()
  # Coverage for the fuzzer and the sanitizers in every library; the harnesses add libFuzzer.
  set(BRISK_SAN_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
      -fno-omit-frame-pointer)
elseif(BRISK_SANITIZE STREQUAL "address")
  set(BRISK_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
elseif(BRISK_SANITIZE STREQUAL "thread")
  set(BRISK_SAN_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT BRISK_SANITIZE STREQUAL "")
  message(FATAL_ERROR "BRISK_SANITIZE must be empty, 'address' or 'thread', not '${BRISK_SANITIZE}'")
endif()

function(brisk_set_flags target)
  target_compile_options(${target} PRIVATE ${BRISK_WARNINGS} ${BRISK_SAN_FLAGS})
  target_link_options(${target} PRIVATE ${BRISK_SAN_FLAGS})
endfunction()
