# ctest driver: install the built tree into a staging prefix, configure and build
# tests/consumer against it with the same compiler, and run it.
# Inputs: BUILD_DIR, SOURCE_DIR, CXX_COMPILER, GENERATOR, CCACHE and LINK_FLAGS (may be empty;
# a sanitized library needs its sanitizer runtimes at the consumer's link).
set(root ${BUILD_DIR}/consumer-test)
set(prefix ${root}/prefix)
set(work ${root}/build)
file(REMOVE_RECURSE ${prefix})

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: ${step} failed (${rc}):\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
if(NOT EXISTS ${prefix}/lib/cmake/Distillery/DistilleryConfig.cmake AND
   NOT EXISTS ${prefix}/lib64/cmake/Distillery/DistilleryConfig.cmake)
  message(FATAL_ERROR "consumer test: no DistilleryConfig.cmake under ${prefix}")
endif()
set(launcher "")
if(CCACHE)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE})
endif()
run("configure" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${work} -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON ${launcher}
    "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}")
run("build" ${CMAKE_COMMAND} --build ${work})
run("run" ${work}/consumer)
message(STATUS "${last_output}")
if(NOT last_output MATCHES "consumer ok")
  message(FATAL_ERROR "consumer test: unexpected output:\n${last_output}")
endif()
