using System.CommandLine;

namespace Duck.Coordinator;

public static class DataCommands
{
    public static void Register(RootCommand root) { }
}
