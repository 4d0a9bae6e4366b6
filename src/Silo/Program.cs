// The Duck silo: one Orleans silo with the training grains and health endpoints. Configuration keys live under
// "Duck:Silo" (appsettings.json, DUCK_ environment variables, --Duck:Silo:Key=value); see SiloHosting.cs.
using Duck.Silo;

var builder = WebApplication.CreateBuilder(args);
builder.AddDuckSilo();
var app = builder.Build();
app.MapDuckHealth();
app.Run();
