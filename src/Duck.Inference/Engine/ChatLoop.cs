// The interactive chat loop behind `duck chat`, on any TextReader/TextWriter so tests can drive it: read a line,
// stream the reply, until "quit" or end of input. Not the prompt format (ChatTemplate) and not argument parsing.
namespace Duck.Inference.Engine;

/// <summary>How a chat ended: replies given, and whether input ran out (EOF) rather than the user typing quit.</summary>
public sealed record ChatLoopResult(int Replies, bool EndOfInput);

/// <summary>Read-reply loop over text streams.</summary>
public static class ChatLoop
{
    /// <summary>Runs until "quit"/"exit", end of input or cancellation. A message that does not fit is reported and skipped.</summary>
    public static ChatLoopResult Run(InferenceModel model, SamplingOptions options, TextReader input, TextWriter output, CancellationToken ct = default)
    {
        options.Validate();
        var chat = new ChatConversation(model);
        int replies = 0;
        output.WriteLine($"Duck ({model.Config.NumLayers} layers, context {model.Config.ContextLength} tokens). Type quit to leave.");
        while (!ct.IsCancellationRequested)
        {
            output.Write("you> ");
            output.Flush();
            string? line = input.ReadLine();
            if (line is null) { output.WriteLine(); return new ChatLoopResult(replies, EndOfInput: true); }
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line is "quit" or "exit") break;
            output.Write("duck>");
            try
            {
                var stats = new GenerationStats();
                foreach (var piece in chat.Reply(line, options, stats, ct))
                {
                    output.Write(piece);
                    output.Flush();
                }
                output.WriteLine();
                replies++;
            }
            catch (ArgumentException e)
            {
                output.WriteLine();
                output.WriteLine($"(not sent: {e.Message})");
            }
        }
        return new ChatLoopResult(replies, EndOfInput: false);
    }
}
