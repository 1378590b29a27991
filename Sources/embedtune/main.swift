import EmbedTuneKernels

// Must run before anything touches OpenBLAS threads or MPI: it may re-execute this program with
// the right OPENBLAS_CORETYPE (see BLASRuntime).
BLASRuntime.selectCoreOrReexec()
BLASRuntime.configureThreads()
EmbedTuneCommand.main(CommandLineSpelling.prepared(Array(CommandLine.arguments.dropFirst())))
