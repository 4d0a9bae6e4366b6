using System.CommandLine;

namespace Duck.Coordinator;

public static class TrainingCommands
{
    public static void Register(RootCommand root) { }
}
