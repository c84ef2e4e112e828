# `cmake --install` puts the library, its headers and a package config under the prefix, so
# another CMake project can `find_package(Distillery)` and link `Distillery::distillery`.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(DISTILLERY_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Distillery)

install(TARGETS distillery EXPORT DistilleryTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS distill RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/src/distillery DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h" PATTERN "pch.h" EXCLUDE)
install(EXPORT DistilleryTargets NAMESPACE Distillery:: DESTINATION ${DISTILLERY_CMAKE_DIR})

configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/DistilleryConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/DistilleryConfig.cmake
                              INSTALL_DESTINATION ${DISTILLERY_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/DistilleryConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/DistilleryConfig.cmake
              ${CMAKE_BINARY_DIR}/DistilleryConfigVersion.cmake
        DESTINATION ${DISTILLERY_CMAKE_DIR})
