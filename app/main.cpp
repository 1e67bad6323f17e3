#include "app/cli.hpp"

int main(int argc, char** argv) {
  return karvon::app::run_cli(argc, argv);
}
