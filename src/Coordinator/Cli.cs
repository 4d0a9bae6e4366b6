// Runs the command tree and turns exceptions into one clear error line and a non-zero exit code.
// User errors (bad flags, missing or corrupt files) exit 2; anything unexpected exits 70 (set DUCK_DEBUG=1 for the stack).
using System.CommandLine;
using System.Text.Json;

namespace Duck.Coordinator;

public static class Cli
{
    public const int UserError = 2;
    public const int InternalError = 70;

    public static readonly JsonSerializerOptions JsonLine = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
    };

    public static async Task<int> RunAsync(RootCommand root, string[] args)
    {
        try
        {
            var parse = root.Parse(args);
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return UserError;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            if (Environment.GetEnvironmentVariable("DUCK_DEBUG") == "1") Console.Error.WriteLine(e);
            return InternalError;
        }
    }

    static bool IsUserError(Exception e) => e is ArgumentException or InvalidDataException or FileNotFoundException
        or DirectoryNotFoundException or UnauthorizedAccessException or IOException or FormatException
        or InvalidOperationException { Source: "Duck" } or UserErrorException;

    /// <summary>Writes one JSON object on one line to stdout (the --json interface).</summary>
    public static void WriteJson(object value) => Console.Out.WriteLine(JsonSerializer.Serialize(value, JsonLine));

    /// <summary>The value of a --kv-cache option.</summary>
    public static Duck.Inference.Engine.KvCacheType ParseKvCache(string value) => value.ToLowerInvariant() switch
    {
        "bf16" => Duck.Inference.Engine.KvCacheType.Bf16,
        "int8" => Duck.Inference.Engine.KvCacheType.Int8,
        _ => throw new UserErrorException($"--kv-cache must be bf16 or int8, got '{value}'"),
    };
}

/// <summary>A mistake of the user's (bad input, impossible settings) to report as one line, without a stack trace.</summary>
public sealed class UserErrorException(string message) : Exception(message);
