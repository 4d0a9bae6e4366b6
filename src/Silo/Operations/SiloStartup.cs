// What a failed start looks like to an operator: one line per problem on stderr and exit code 2, never a stack
// trace and never a process that stays up half-started. Configuration errors and unreachable storage arrive as
// SiloConfigurationException; a port already in use arrives from Kestrel or the silo's socket listener.
using System.Net.Sockets;

namespace Duck.Silo;

public static class SiloStartup
{
    /// <summary>Prints one "error:" line per problem and returns the exit code: 2 for configuration, storage and ports, 1 otherwise.</summary>
    public static int Report(Exception e)
    {
        if (IsStartupError(e, out string message))
        {
            Console.Error.WriteLine($"error: {message}");
            return DuckConfiguration.ExitCode;
        }
        var root = e is AggregateException { InnerException: { } inner } ? inner : e;
        Console.Error.WriteLine($"error: the silo stopped: {root.GetType().Name}: {root.Message.Split('\n')[0].Trim()}");
        if (Environment.GetEnvironmentVariable("DUCK_DEBUG") == "1") Console.Error.WriteLine(e);
        return 1;
    }

    /// <summary>True (with the operator's message) for errors of configuration, storage and ports before the silo served.</summary>
    public static bool IsStartupError(Exception e, out string message)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            switch (x)
            {
                case SiloConfigurationException c:
                    message = c.Message.Replace(Environment.NewLine, Environment.NewLine + "error: ");
                    return true;
                case ArgumentException a when a.Message.Contains("Duck:"):
                    // Other options records (the chat API's "Duck:Chat") name their key in an ArgumentException.
                    message = a.Message;
                    return true;
                case Microsoft.AspNetCore.Connections.AddressInUseException http:
                    message = $"the HTTP port is already in use ({http.Message}); change Duck:Silo:HttpPort";
                    return true;
                case SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } s:
                    message = $"a silo or gateway port is already in use ({s.Message}); change Duck:Silo:SiloPort or Duck:Silo:GatewayPort";
                    return true;
            }
        }
        message = "";
        return false;
    }
}
