/* pkg-config (ompi-c) supplies the include path; without pkg-config, Debian's multiarch location. */
#if __has_include(<mpi.h>)
#include <mpi.h>
#elif __has_include("/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h")
#include "/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h"
#elif __has_include("/usr/lib/aarch64-linux-gnu/openmpi/include/mpi.h")
#include "/usr/lib/aarch64-linux-gnu/openmpi/include/mpi.h"
#else
#error "mpi.h not found: install libopenmpi-dev (Debian: apt-get install libopenmpi-dev)"
#endif
#include <unistd.h>
#include <sys/syscall.h>
/* Open MPI's predefined handles are macros over incomplete structs ((MPI_Comm)&ompi_mpi_comm_world),
   which Swift cannot import (docs/platform.md §1). These static inline accessors can be. */
static inline MPI_Comm     cmpi_comm_world(void)    { return MPI_COMM_WORLD; }
static inline MPI_Comm     cmpi_comm_self(void)     { return MPI_COMM_SELF; }
static inline MPI_Comm     cmpi_comm_null(void)     { return MPI_COMM_NULL; }
static inline MPI_Datatype cmpi_float(void)         { return MPI_FLOAT; }
static inline MPI_Datatype cmpi_double(void)        { return MPI_DOUBLE; }
static inline MPI_Datatype cmpi_int32(void)         { return MPI_INT32_T; }
static inline MPI_Datatype cmpi_int64(void)         { return MPI_INT64_T; }
static inline MPI_Datatype cmpi_byte(void)          { return MPI_BYTE; }
static inline MPI_Op       cmpi_sum(void)           { return MPI_SUM; }
static inline MPI_Op       cmpi_max(void)           { return MPI_MAX; }
static inline MPI_Op       cmpi_min(void)           { return MPI_MIN; }
static inline const void * cmpi_in_place(void)      { return MPI_IN_PLACE; }
static inline MPI_Status * cmpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request  cmpi_request_null(void)  { return MPI_REQUEST_NULL; }
static inline MPI_Info     cmpi_info_null(void)     { return MPI_INFO_NULL; }
static inline int          cmpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
/* pthread_self() is __attribute__((const)) and gets hoisted across actor hops (docs/platform.md §5). */
static inline long         cmpi_gettid(void)        { return syscall(SYS_gettid); }
