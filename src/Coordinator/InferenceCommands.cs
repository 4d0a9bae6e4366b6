using System.CommandLine;

namespace Duck.Coordinator;

public static class InferenceCommands
{
    public static void Register(RootCommand root) { }
}
