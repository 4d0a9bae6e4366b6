// The chat grains' log messages, source-generated ([LoggerMessage]); event ids from 100 to stay clear of training's.
using Microsoft.Extensions.Logging;

namespace Duck.Grains;

static partial class Log
{
    [LoggerMessage(100, LogLevel.Information, "chat model {Name} loaded from {Path}: {Layers} layers, dim {ModelDim}, context {Context}, {Threads} threads")]
    public static partial void ChatModelLoaded(ILogger logger, string name, string path, int layers, int modelDim, int context, int threads);

    [LoggerMessage(101, LogLevel.Information, "chat session {Session} activated with {Messages} stored messages")]
    public static partial void ChatSessionActivated(ILogger logger, string session, int messages);

    [LoggerMessage(102, LogLevel.Warning, "chat session {Session}: reply failed")]
    public static partial void ChatReplyFailed(ILogger logger, Exception e, string session);
}
