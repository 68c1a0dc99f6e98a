// Being written (helper); replaced before commit.
#include "commands.hpp"
#include "mw/error.hpp"
namespace mw::cli {
int bench(int, char**) { throw Error("bench: not built yet"); }
}
