// Provides std::ios_base_library_init(), the one GLIBCXX_3.4.32 (GCC 13) symbol that
// TorchSharp 0.107's libLibTorchSharp.so needs. On older C++ runtimes (GCC 12, Debian 12)
// the function does not exist; its whole job is to make sure the standard streams are
// initialised, which a static std::ios_base::Init does.
#include <ios>

namespace std
{
__attribute__((visibility("default"))) void ios_base_library_init()
{
    static ios_base::Init init;
}
}
